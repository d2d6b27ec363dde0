//! BPF maps owned by this process: created with `BPF_MAP_CREATE`, read and written by key.
//!
//! A [`Map`] remembers its key and value sizes and checks every access against them, so the
//! `sys` call underneath always gets buffers of the size the kernel copies.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sys::bpf::{self as sys, MapType, SyscallError};

/// A BPF map and the sizes it was made with.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
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
        let fd = sys::map_create(map_type, key_size as u32, value_size as u32, entries, name)?;
        Ok(Map {
            fd,
            key_size,
            value_size,
        })
    }

    /// The raw descriptor, as programs embed it with [`crate::bpf::Insn::ld_map_fd`].
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn check(&self, call: &'static str, key: &[u8], value: &[u8]) -> Result<(), SyscallError> {
        if key.len() != self.key_size || value.len() != self.value_size {
            return Err(SyscallError {
                call,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "key/value of {}/{} bytes for a map of {}/{} bytes",
                        key.len(),
                        value.len(),
                        self.key_size,
                        self.value_size
                    ),
                ),
            });
        }
        Ok(())
    }

    /// Stores `value` under `key` (`BPF_ANY`).
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<(), SyscallError> {
        self.check("BPF_MAP_UPDATE_ELEM", key, value)?;
        sys::map_update_elem(self.fd.as_fd(), key, value, sys::BPF_ANY)
    }

    /// Reads the value under `key` into `value`.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<(), SyscallError> {
        self.check("BPF_MAP_LOOKUP_ELEM", key, value)?;
        sys::map_lookup_elem(self.fd.as_fd(), key, value)
    }

    /// Removes `key` (hash maps); `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool, SyscallError> {
        self.check("BPF_MAP_DELETE_ELEM", key, &vec![0; self.value_size])?;
        match sys::map_delete_elem(self.fd.as_fd(), key) {
            Ok(()) => Ok(true),
            Err(err) if err.errno() == Some(libc::ENOENT) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Every key in the map (`BPF_MAP_GET_NEXT_KEY` walk).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, SyscallError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.key_size];
            let more =
                sys::map_get_next_key(self.fd.as_fd(), keys.last().map(Vec::as_slice), &mut next)?;
            if !more {
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
        self.fd.as_fd()
    }
}
