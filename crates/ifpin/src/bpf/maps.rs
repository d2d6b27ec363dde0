//! BPF maps owned by this process: created with `BPF_MAP_CREATE`, read and written by key.
//!
//! A [`Map`] knows its key and value sizes, and every access is checked against them before
//! the system call: a buffer of the wrong size is an `InvalidInput` error, never a kernel
//! write past a Rust buffer.

use std::os::fd::{AsFd, BorrowedFd};

use crate::sys::bpf::{self as sys, MapFd, MapType, SyscallError};

/// A BPF map and the sizes it was made with.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # if !nix::unistd::geteuid().is_root() { return Ok(()); }
/// let map = ifpin::bpf::Map::array("example", 64, 1)?;
/// let mut too_small = [0u8; 1];
/// // The kernel would write 64 bytes: refused before the system call.
/// let err = map.lookup(&0u32.to_ne_bytes(), &mut too_small).unwrap_err();
/// assert_eq!(err.source.kind(), std::io::ErrorKind::InvalidInput);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Map {
    inner: MapFd,
}

impl Map {
    /// `BPF_MAP_TYPE_ARRAY` with `entries` values of `value_size` bytes, keyed by `u32`.
    pub fn array(name: &str, value_size: usize, entries: u32) -> Result<Map, SyscallError> {
        Map::create(MapType::Array, name, 4, value_size, entries)
    }

    /// `BPF_MAP_TYPE_HASH` with up to `entries` keys.
    pub fn hash(
        name: &str,
        key_size: usize,
        value_size: usize,
        entries: u32,
    ) -> Result<Map, SyscallError> {
        Map::create(MapType::Hash, name, key_size, value_size, entries)
    }

    fn create(
        map_type: MapType,
        name: &str,
        key_size: usize,
        value_size: usize,
        entries: u32,
    ) -> Result<Map, SyscallError> {
        let inner = sys::map_create(map_type, key_size as u32, value_size as u32, entries, name)?;
        Ok(Map { inner })
    }

    /// The raw descriptor, as programs embed it with [`crate::bpf::Insn::ld_map_fd`].
    pub fn raw_fd(&self) -> i32 {
        self.inner.raw_fd()
    }

    /// Stores `value` under `key` (`BPF_ANY`).
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<(), SyscallError> {
        self.inner.update(key, value, sys::BPF_ANY)
    }

    /// Reads the value under `key` into `value`.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<(), SyscallError> {
        self.inner.lookup(key, value)
    }

    /// Removes `key` (hash maps); `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool, SyscallError> {
        match self.inner.delete(key) {
            Ok(()) => Ok(true),
            Err(err) if err.errno() == Some(libc::ENOENT) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Every key in the map (`BPF_MAP_GET_NEXT_KEY` walk).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, SyscallError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.inner.key_size()];
            if !self
                .inner
                .next_key(keys.last().map(Vec::as_slice), &mut next)?
            {
                return Ok(keys);
            }
            keys.push(next);
        }
    }

    /// Reads the `u64` at array index `index`.
    pub fn lookup_u64(&self, index: u32) -> Result<u64, SyscallError> {
        let mut value = [0u8; 8];
        self.lookup(&index.to_ne_bytes(), &mut value)?;
        Ok(u64::from_ne_bytes(value))
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}
