//! The sysproxy client library.
