//! The www example as a Linux process.

fn main() {}
