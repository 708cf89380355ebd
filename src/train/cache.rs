//! The training token cache: each image's backbone maps, computed once and kept in f16, so
//! epochs after the first never run the backbone. Memory is bounded: entries past the
//! configured limit go to an unlinked temporary file (gone when the cache is dropped, or
//! the process dies) and are read back when a batch needs them.

use std::fs::File;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::image::InputGeometry;
use crate::{Error, ErrorKind, Result};

enum Storage {
    Memory(Vec<f16>),
    /// `len` f16 values at byte `offset` of the spill file.
    Spilled {
        offset: u64,
        len: usize,
    },
}

struct Entry {
    geometry: InputGeometry,
    storage: Storage,
}

/// The cached tokens of one image: each level `[C_h, h_h, w_h]`, concatenated in level
/// order, and where the image landed in the input.
pub struct CachedImage {
    /// Where the image landed in the input.
    pub geometry: InputGeometry,
    /// Every level's values, in f32, concatenated.
    pub values: Vec<f32>,
}

/// Images' backbone maps in f16, in memory up to a limit, then on disk.
pub struct TokenCache {
    entries: Vec<Entry>,
    limit_bytes: u64,
    disk_limit_bytes: u64,
    memory_bytes: u64,
    spill: Option<File>,
    spill_bytes: u64,
    values_per_image: usize,
}

impl TokenCache {
    /// An empty cache for images of `values_per_image` values (all levels together),
    /// keeping at most `limit_bytes` in memory.
    pub fn new(values_per_image: usize, limit_bytes: u64) -> Self {
        TokenCache {
            entries: Vec::new(),
            limit_bytes,
            disk_limit_bytes: u64::MAX,
            memory_bytes: 0,
            spill: None,
            spill_bytes: 0,
            values_per_image,
        }
    }

    /// Bounds what may spill to the temporary file: past `bytes`, [`TokenCache::push`]
    /// fails with [`ErrorKind::CacheFull`] (and caches nothing) instead of filling the
    /// disk.
    pub fn with_disk_limit(mut self, bytes: u64) -> Self {
        self.disk_limit_bytes = bytes;
        self
    }

    /// Images cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no image is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held in memory.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// Bytes spilled to the temporary file.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill_bytes
    }

    /// Adds one image's maps (levels concatenated, f32), rounding them to f16.
    pub fn push(&mut self, values: &[f32], geometry: InputGeometry) -> Result<()> {
        if values.len() != self.values_per_image {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "token cache: {} values for an image of {}",
                    values.len(),
                    self.values_per_image
                ),
            ));
        }
        let mut half = vec![f16::ZERO; values.len()];
        half.convert_from_f32_slice(values);
        let bytes = (half.len() * 2) as u64;
        let storage = if self.memory_bytes + bytes <= self.limit_bytes {
            self.memory_bytes += bytes;
            Storage::Memory(half)
        } else if self.spill_bytes.saturating_add(bytes) > self.disk_limit_bytes {
            return Err(Error::new(
                ErrorKind::CacheFull,
                format!(
                    "the training cache is full: {} images hold {} bytes in memory (limit \
                     {}) and {} bytes in the temporary file (limit {}); this image needs \
                     {bytes} more. Raise cache_limit_bytes or cache_disk_limit_bytes, or \
                     train on fewer images",
                    self.entries.len(),
                    self.memory_bytes,
                    self.limit_bytes,
                    self.spill_bytes,
                    self.disk_limit_bytes
                ),
            ));
        } else {
            let offset = self.spill_bytes;
            let file = self.spill_file()?;
            let raw: Vec<u8> = half.iter().flat_map(|v| v.to_le_bytes()).collect();
            crate::platform::write_all_at(file, &raw, offset)
                .map_err(|e| spill_error("write", &e))?;
            self.spill_bytes += bytes;
            Storage::Spilled {
                offset,
                len: half.len(),
            }
        };
        self.entries.push(Entry { geometry, storage });
        Ok(())
    }

    /// Where image `index` landed in the input.
    pub fn geometry(&self, index: usize) -> Result<InputGeometry> {
        self.entries
            .get(index)
            .map(|e| e.geometry)
            .ok_or_else(|| Error::invalid_argument(format!("no cached image {index}")))
    }

    /// The maps of image `index`, back in f32.
    pub fn get(&self, index: usize) -> Result<CachedImage> {
        let entry = &self.entries[index];
        let mut values = vec![0f32; self.values_per_image];
        match &entry.storage {
            Storage::Memory(half) => half.convert_to_f32_slice(&mut values),
            Storage::Spilled { offset, len } => {
                let file = self
                    .spill
                    .as_ref()
                    .expect("a spilled entry has a spill file");
                let mut raw = vec![0u8; len * 2];
                crate::platform::read_exact_at(file, &mut raw, *offset)
                    .map_err(|e| spill_error("read", &e))?;
                for (v, b) in values.iter_mut().zip(raw.chunks_exact(2)) {
                    *v = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
        Ok(CachedImage {
            geometry: entry.geometry,
            values,
        })
    }

    fn spill_file(&mut self) -> Result<&File> {
        if self.spill.is_none() {
            let dir = std::env::temp_dir();
            let file = crate::platform::anonymous_scratch_file(&dir, "varad-token-cache")
                .map_err(|e| Error::io(&dir, "create the token cache spill file in", &e))?;
            self.spill = Some(file);
        }
        Ok(self.spill.as_ref().expect("just created"))
    }
}

fn spill_error(action: &str, e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("cannot {action} the token cache spill file: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::InputSpec;

    #[test]
    fn keeps_values_to_f16_precision_in_memory_and_on_disk() {
        let geometry = InputGeometry::new(10, 10, &InputSpec::new(16, 16));
        // Room for two images of 100 values (200 bytes each) in memory.
        let mut cache = TokenCache::new(100, 400);
        let images: Vec<Vec<f32>> = (0..5)
            .map(|i| {
                (0..100)
                    .map(|j| (i * 100 + j) as f32 * 0.37 - 50.0)
                    .collect()
            })
            .collect();
        for image in &images {
            cache.push(image, geometry).unwrap();
        }
        assert_eq!(cache.len(), 5);
        assert_eq!(cache.memory_bytes(), 400);
        assert_eq!(cache.spilled_bytes(), 600);
        for (i, image) in images.iter().enumerate() {
            let back = cache.get(i).unwrap();
            assert_eq!(back.geometry, geometry);
            for (a, b) in image.iter().zip(&back.values) {
                assert!(
                    (a - b).abs() <= a.abs() * 1e-3 + 1e-3,
                    "image {i}: {a} vs {b}"
                );
                assert_eq!(*b, f16::from_f32(*a).to_f32(), "exactly the f16 rounding");
            }
        }
        assert!(cache.push(&[0.0; 3], geometry).is_err());
    }
}
