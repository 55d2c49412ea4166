//! The paged KV cache: key and value rows for every layer in fixed-size blocks (for latent
//! attention, one row per token: the compressed latent and the rotary key), and the
//! allocator that hands blocks to sequences.
//!
//! A sequence owns a block table (block ids in position order); position `p` lives in
//! slot `table[p / block_size] * block_size + p % block_size`. Blocks are reference
//! counted so that sequences sharing a prompt prefix can share its blocks.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// Hands out cache blocks. A block returns to the free list when its last holder lets go,
/// but keeps its contents: the prefix cache may hand it out again (`retain` on a free
/// block takes it back) until `allocate` reuses it, oldest-freed first.
#[derive(Debug, Clone)]
pub struct BlockAllocator {
    free: std::collections::VecDeque<u32>,
    is_free: Vec<bool>,
    refs: Vec<u32>,
    num_free: usize,
}

impl BlockAllocator {
    /// An allocator over `num_blocks` blocks, all free.
    pub fn new(num_blocks: usize) -> BlockAllocator {
        BlockAllocator {
            free: (0..num_blocks as u32).collect(),
            is_free: vec![true; num_blocks],
            refs: vec![0; num_blocks],
            num_free: num_blocks,
        }
    }

    /// The least recently freed block, now held once; `None` when all are taken.
    pub fn allocate(&mut self) -> Option<u32> {
        while let Some(b) = self.free.pop_front() {
            if self.is_free[b as usize] {
                self.is_free[b as usize] = false;
                self.refs[b as usize] = 1;
                self.num_free -= 1;
                return Some(b);
            }
        }
        None
    }

    /// One more holder of a block (prefix sharing); takes it off the free list if free.
    pub fn retain(&mut self, block: u32) {
        let b = block as usize;
        if self.is_free[b] {
            self.is_free[b] = false;
            self.num_free -= 1;
        }
        self.refs[b] += 1;
    }

    /// One holder fewer; the block is free again when none is left.
    pub fn release(&mut self, block: u32) {
        let b = block as usize;
        self.refs[b] = self.refs[b].saturating_sub(1);
        if self.refs[b] == 0 && !self.is_free[b] {
            self.is_free[b] = true;
            self.num_free += 1;
            self.free.push_back(block);
        }
    }

    /// Blocks not held by anyone.
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    /// All blocks.
    pub fn num_blocks(&self) -> usize {
        self.refs.len()
    }
}

/// Key and value rows of every layer, `[num_blocks * block_size, width]` each, widths
/// from [`ModelConfig::cache_widths`]; latent attention keeps no value rows.
#[derive(Debug)]
pub struct KvCache {
    block_size: usize,
    layers: Vec<(Tensor, Option<Tensor>)>,
}

impl KvCache {
    /// A cache of `num_blocks` blocks of `block_size` positions.
    pub fn new(
        cfg: &ModelConfig,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<KvCache> {
        if num_blocks == 0 || block_size == 0 {
            return Err(Error::Cache(
                "needs at least one block of at least one position".into(),
            ));
        }
        let slots = num_blocks * block_size;
        let (kw, vw) = cfg.cache_widths();
        let layers = (0..cfg.num_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros((slots, kw), dtype, device)?,
                    (vw > 0)
                        .then(|| Tensor::zeros((slots, vw), dtype, device))
                        .transpose()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { block_size, layers })
    }

    /// Bytes of cache one position takes across all layers (keys and values, or latents).
    pub fn bytes_per_token(cfg: &ModelConfig, dtype: DType) -> usize {
        let (kw, vw) = cfg.cache_widths();
        cfg.num_layers * (kw + vw) * dtype.size_in_bytes()
    }

    /// How many blocks fit in a memory budget.
    pub fn blocks_for_budget(
        cfg: &ModelConfig,
        budget_bytes: usize,
        block_size: usize,
        dtype: DType,
    ) -> usize {
        budget_bytes / (Self::bytes_per_token(cfg, dtype) * block_size).max(1)
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The slot of position `pos` under a block table.
    pub fn slot(&self, blocks: &[u32], pos: usize) -> Result<usize> {
        let block = blocks.get(pos / self.block_size).ok_or_else(|| {
            Error::Cache(format!(
                "position {pos} is past the sequence's {} blocks",
                blocks.len()
            ))
        })?;
        Ok(*block as usize * self.block_size + pos % self.block_size)
    }

    /// The contiguous runs of slots holding positions `start..start + n`, in position
    /// order: `(first slot, positions)`, each run ending at its block's end at the latest.
    pub(crate) fn runs(&self, blocks: &[u32], start: usize, n: usize) -> Result<Vec<(usize, usize)>> {
        let mut runs = Vec::with_capacity(n.div_ceil(self.block_size) + 1);
        let mut i = 0;
        while i < n {
            let pos = start + i;
            let run = (self.block_size - pos % self.block_size).min(n - i);
            runs.push((self.slot(blocks, pos)?, run));
            i += run;
        }
        Ok(runs)
    }

    /// Writes key and value rows `[n, width]` for positions `start..start + n` (no value
    /// rows for latent attention).
    pub(crate) fn write(
        &self,
        layer: usize,
        blocks: &[u32],
        start: usize,
        k: &Tensor,
        v: Option<&Tensor>,
    ) -> Result<()> {
        let (kc, vc) = &self.layers[layer];
        let mut i = 0;
        for (slot, run) in self.runs(blocks, start, k.dim(0)?)? {
            kc.slice_set(&k.narrow(0, i, run)?, 0, slot)?;
            if let (Some(vc), Some(v)) = (vc, v) {
                vc.slice_set(&v.narrow(0, i, run)?, 0, slot)?;
            }
            i += run;
        }
        Ok(())
    }

    /// The key and value rows of positions `0..len`, gathered into `[len, width]`
    /// tensors (no value rows for latent attention).
    pub(crate) fn read(&self, layer: usize, blocks: &[u32], len: usize) -> Result<(Tensor, Option<Tensor>)> {
        let (kc, vc) = &self.layers[layer];
        let mut parts_k = Vec::new();
        let mut parts_v = Vec::new();
        for (slot, run) in self.runs(blocks, 0, len)? {
            parts_k.push(kc.narrow(0, slot, run)?);
            if let Some(vc) = vc {
                parts_v.push(vc.narrow(0, slot, run)?);
            }
        }
        let v = (!parts_v.is_empty())
            .then(|| Tensor::cat(&parts_v, 0))
            .transpose()?;
        Ok((Tensor::cat(&parts_k, 0)?, v))
    }

    /// `f` of a layer's key rows and value rows (none for latent attention), read where
    /// they lie; `None` where the cache is not f32 in CPU memory.
    pub(crate) fn in_place<R>(
        &self,
        layer: usize,
        f: impl FnOnce(Rows<'_>, Option<Rows<'_>>) -> R,
    ) -> Option<R> {
        let (kc, vc) = self.layers.get(layer)?;
        Rows::of(kc, |keys| match vc {
            None => Some(f(keys, None)),
            Some(vc) => Rows::of(vc, |values| f(keys, Some(values))),
        })
        .flatten()
    }
}

/// One layer's cache rows (keys, values or latents) as they lie in memory: slot `s` is
/// `data[s × width ..][.. width]`.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    /// Every slot's row, one after another.
    pub(crate) data: &'a [f32],
    /// Values per row.
    pub(crate) width: usize,
}

impl Rows<'_> {
    /// `f` of the rows of `t` (`[slots, width]`), read where they lie; `None` where `t` is
    /// not contiguous f32 in CPU memory.
    fn of<R>(t: &Tensor, f: impl FnOnce(Rows<'_>) -> R) -> Option<R> {
        if !t.is_contiguous() {
            return None;
        }
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            return None;
        };
        Some(f(Rows {
            data: data.get(layout.start_offset()..)?,
            width: t.dim(1).ok()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_shared_and_freed_by_reference_count() {
        let mut a = BlockAllocator::new(2);
        let x = a.allocate();
        let y = a.allocate();
        assert!(x.is_some() && y.is_some());
        assert_eq!(a.allocate(), None);
        let x = x.unwrap_or_default();
        a.retain(x);
        a.release(x);
        assert_eq!(a.num_free(), 0);
        a.release(x);
        assert_eq!(a.num_free(), 1);
        // A free block can be taken back (a prefix-cache hit) before it is reused.
        a.retain(x);
        assert_eq!(a.num_free(), 0);
        assert_eq!(a.allocate(), None);
        a.release(x);
        assert_eq!(a.allocate(), Some(x));
    }
}
