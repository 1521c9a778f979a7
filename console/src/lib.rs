//! Logging and line input over any console: under construction.

#![no_std]
#![forbid(unsafe_code)]
