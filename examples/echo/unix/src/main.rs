//! The echo example as a Linux process.

fn main() {}
