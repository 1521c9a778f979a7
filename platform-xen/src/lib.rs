//! Run mirage-rs applications as Xen PVH guests.

#![no_std]
