//! The kv example as a Linux process.

fn main() {}
