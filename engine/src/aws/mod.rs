//! What AWS outputs share beyond request signing (`crate::s3::sigv4`): where
//! credentials come from ([`creds`]).

pub mod creds;
