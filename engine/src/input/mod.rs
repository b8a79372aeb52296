//! Inputs: sources that turn received bytes (or generated samples) into routed
//! batches, one module (or folder) per plugin with its registry row (`PLUGIN`); see
//! [`crate::plugin::Input`]. [`net`] holds the socket set-up they share.
pub mod debug_agent;
pub mod forward;
pub mod http;
pub mod httpd;
pub mod kafka_group;
pub mod monitor_agent;
pub mod net;
pub mod prometheus;
pub mod sample;
pub mod syslog;
pub mod tcp;
pub mod text;
pub mod udp;
