//! netfront: a Xen virtual network interface (`vif`) as a
//! [`mirage_types::net::NetworkDevice`].

pub mod queues;
pub mod ring;
