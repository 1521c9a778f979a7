//! Run mirage-rs applications as Linux processes: under construction.
