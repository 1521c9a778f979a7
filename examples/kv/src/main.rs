//! The kv example's entry, the same line for every target.

#![cfg_attr(panic = "abort", no_std, no_main)]

mirage::main!(kv::start);
