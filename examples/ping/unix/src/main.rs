//! The ping example as a Linux process.

fn main() {}
