//! Lab simulator library.
