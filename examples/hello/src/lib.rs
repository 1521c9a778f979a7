//! The hello example application.

#![no_std]
