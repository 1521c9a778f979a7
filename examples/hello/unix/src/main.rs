//! The hello example as a Linux process.

fn main() {}
