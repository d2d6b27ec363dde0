//! # netlab: throwaway virtual networks in Linux network namespaces
//!
//! Used by ifpin's tests, benchmarks and `ifpin demo` to build small topologies (hosts, veth
//! links, addresses, routes), run code inside them, and count the frames crossing each link.
#![deny(missing_docs)]
pub mod vectors;
