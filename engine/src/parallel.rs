//! Data-parallel loops on candle's own CPU thread pool.
//!
//! candle runs its CPU ops on a barrier pool (the calling thread plus workers that spin a
//! while before parking). braid's kernels used rayon's pool beside it: on 2 cores, every
//! product handed its work to two rayon threads and slept, while candle's worker was
//! still spinning, so a decode step of many small products (a mixture of experts: 17
//! per layer) spent its time in wake-ups and context switches. Running braid's kernels
//! on candle's pool too keeps one set of threads for the whole step, and the calling
//! thread does a share of the work instead of waiting.

use std::sync::{Mutex, PoisonError};

/// `work(index, chunk)` for each chunk of `size` values of `data` (the last may be
/// shorter), spread over candle's CPU thread pool; the results in chunk order.
pub(crate) fn map_chunks<T: Send, R: Send>(
    data: &mut [T],
    size: usize,
    work: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let pieces: Vec<Mutex<(&mut [T], Option<R>)>> = data
        .chunks_mut(size.max(1))
        .map(|chunk| Mutex::new((chunk, None)))
        .collect();
    let run = |i: usize| {
        // A panic in `work` propagates to the caller; a poisoned piece is never reused.
        let mut piece = pieces[i].lock().unwrap_or_else(PoisonError::into_inner);
        let result = work(i, piece.0);
        piece.1 = Some(result);
    };
    if pieces.len() <= 1 {
        (0..pieces.len()).for_each(run);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(pieces.len(), |range| range.for_each(run));
    }
    pieces
        .into_iter()
        .filter_map(|p| p.into_inner().unwrap_or_else(PoisonError::into_inner).1)
        .collect()
}

/// `work(index, chunk)` for each chunk of `size` values of `data`, on candle's pool.
pub(crate) fn for_each_chunk<T: Send>(data: &mut [T], size: usize, work: impl Fn(usize, &mut [T]) + Sync) {
    map_chunks(data, size, work);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_once_and_results_in_order() {
        let mut data: Vec<usize> = vec![0; 1000];
        let sums = map_chunks(&mut data, 7, |i, chunk| {
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = i * 7 + j;
            }
            i
        });
        assert_eq!(sums, (0..143).collect::<Vec<_>>());
        assert!(data.iter().enumerate().all(|(i, v)| *v == i));
        let mut none: Vec<u8> = Vec::new();
        assert!(map_chunks(&mut none, 4, |_, _| 1).is_empty());
    }
}
