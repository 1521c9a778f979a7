//! The ping example application.

#![no_std]
