//! `mirage-kv`: under construction.

fn main() {}
