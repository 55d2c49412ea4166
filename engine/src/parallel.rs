//! Data-parallel loops on the thread pool candle's quantized products use.
//!
//! candle 0.11 runs its quantized products on a barrier pool (the calling thread plus
//! workers that spin a while before parking). braid's kernels used rayon's pool beside
//! it: on 2 cores, every product handed its work to two rayon threads and slept while
//! candle's worker was still spinning, so a decode step of many small products (a mixture
//! of experts: ~17 per layer) spent its time in wake-ups and context switches. Running
//! braid's kernels on candle's pool too keeps one set of threads for a decode step's
//! products, and the calling thread does a share of the work instead of waiting.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};

thread_local! {
    /// Whether this thread is inside [`map_chunks`] (a nested call runs inline: candle's
    /// pool serialises its callers, so the calling thread would wait for itself).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// `work(index, chunk)` for each chunk of `size` values of `data` (the last may be
/// shorter), spread over candle's pool; the results in chunk order. A panic in `work` is
/// caught on the thread it happened on and resumed here once every chunk is done, so the
/// pool itself never unwinds (a panic through it would poison its lock for good).
pub(crate) fn map_chunks<T: Send, R: Send>(
    data: &mut [T],
    size: usize,
    work: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let pieces: Vec<Mutex<(&mut [T], Option<R>)>> = data
        .chunks_mut(size.max(1))
        .map(|chunk| Mutex::new((chunk, None)))
        .collect();
    let panicked: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
    let run = |i: usize| {
        let mut piece = pieces[i].lock().unwrap_or_else(PoisonError::into_inner);
        match catch_unwind(AssertUnwindSafe(|| work(i, piece.0))) {
            Ok(result) => piece.1 = Some(result),
            Err(payload) => {
                panicked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(payload);
            }
        }
    };
    if pieces.len() <= 1 || INSIDE.get() {
        (0..pieces.len()).for_each(run);
    } else {
        INSIDE.set(true);
        candle_core::utils::barrier_pool().execute_chunked(pieces.len(), |range| range.for_each(run));
        INSIDE.set(false);
    }
    if let Some(payload) = panicked.into_inner().unwrap_or_else(PoisonError::into_inner) {
        resume_unwind(payload);
    }
    let count = pieces.len();
    let results: Vec<R> = pieces
        .into_iter()
        .filter_map(|p| p.into_inner().unwrap_or_else(PoisonError::into_inner).1)
        .collect();
    debug_assert_eq!(results.len(), count, "a chunk without its result");
    results
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

    #[test]
    fn a_panic_reaches_the_caller_and_the_pool_still_works() {
        let mut data = vec![0u32; 64];
        let caught = catch_unwind(AssertUnwindSafe(|| {
            for_each_chunk(&mut data, 4, |i, _| assert!(i != 5, "chunk five"));
        }));
        assert!(caught.is_err());
        let counts = map_chunks(&mut data, 4, |_, chunk| chunk.len());
        assert_eq!(counts, vec![4; 16]);
    }

    #[test]
    fn a_nested_call_runs_inline() {
        let mut outer = vec![0u32; 8];
        let inner_sums = map_chunks(&mut outer, 2, |_, _| {
            let mut inner = vec![1u32; 10];
            map_chunks(&mut inner, 3, |_, c| c.iter().sum::<u32>())
                .iter()
                .sum::<u32>()
        });
        assert_eq!(inner_sums, vec![10; 4]);
    }
}
