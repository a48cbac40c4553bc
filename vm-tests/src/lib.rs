//! Helpers for tests that run inside the VM.
