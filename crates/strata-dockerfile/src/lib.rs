//! Dockerfile frontend.
