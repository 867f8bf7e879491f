//! The hardware backend (placeholder while it is written).
