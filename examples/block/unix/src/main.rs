//! The block example as a Linux process.

fn main() {}
