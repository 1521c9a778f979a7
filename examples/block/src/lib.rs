//! The block example application.

#![no_std]
