//! OCI layer tarballs.
