//! Incompressible spans inside a fast-tier block (random or compressed file bodies between
//! tar headers). Deflating such a span saves nothing and costs the compressor's literal
//! coding, most of its time; storing it costs a sync flush and a stored-block header
//! (about 10 bytes). The spans are found from the bytes alone, so the output stays
//! deterministic: zero runs (header fields, padding to 512) cut the block into stretches,
//! and a stretch long enough whose histogram looks uniform is a span.

use std::ops::Range;

use super::{Histogram, FAST_DEN, FAST_NUM};

/// Zero runs at least this long separate stretches. Any 15 zero bytes hold an aligned
/// 8-byte zero word, which is what the scan looks for.
const ZERO_RUN: usize = 16;
/// Shorter stretches are left to the compressor. Storing one costs about 10 bytes more than
/// deflating it (a sync flush and a stored-block header): 2% at this length (measured:
/// 2.3% on 512-byte random stretches between zero runs, 2.5x faster), 8% at 128 bytes.
/// Stretches this short carry few of a tar's bytes (1.6% for bodies of 64 B-4 KB).
const MIN_SPAN: usize = 512;

/// The incompressible spans of `block`, in order, not overlapping.
pub(super) fn raw_spans(block: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut push = |r: Range<usize>| {
        if r.len() >= MIN_SPAN && looks_random(&block[r.clone()]) {
            spans.push(r);
        }
    };
    // Start of the current stretch (just after the last long zero run).
    let mut from = 0;
    let mut w = 0;
    while w + 8 <= block.len() {
        let word = u64::from_ne_bytes(block[w..w + 8].try_into().expect("8 bytes"));
        if word != 0 {
            w += 8;
            continue;
        }
        let mut start = w;
        while start > from && block[start - 1] == 0 {
            start -= 1;
        }
        let mut end = w + 8;
        while end < block.len() && block[end] == 0 {
            end += 1;
        }
        if end - start >= ZERO_RUN {
            push(from..start);
            from = end;
        }
        w = end.next_multiple_of(8);
    }
    push(from..block.len());
    spans
}

/// Whether `s` looks like uniform random bytes: 256·Σc² < 3/2·n² + 256·n, which is the
/// block test's fast-tier bound on 256·Σp² (3/2) plus the Σc² a uniform sample of n bytes
/// has from sampling alone (n + n²/256). Text scores about 16, x86 code 3-5, so both are
/// deflated.
fn looks_random(s: &[u8]) -> bool {
    let mut counts = Histogram::new();
    counts.add(s);
    let sum_sq: u64 = (0..256).map(|i| counts.count(i).pow(2)).sum();
    let n = s.len() as u64;
    FAST_DEN * 256 * sum_sq < FAST_NUM * n * n + FAST_DEN * 256 * n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Uniform over 1..=255: zero bytes come only from the test's runs.
                ((s >> 24) as u8).max(1)
            })
            .collect()
    }

    #[test]
    fn spans_are_the_random_stretches_between_long_zero_runs() {
        let mut block = random(450, 1); // 0..450
        block.extend_from_slice(&[0; 15]); // too short to cut: 450..465
        block.extend_from_slice(&random(100, 2)); // 465..565
        block.extend_from_slice(&[0; 40]); // cuts: 565..605
        block.extend_from_slice(&random(500, 3)); // too short alone: 605..1105
        block.extend_from_slice(&[0; 16]); // cuts: 1105..1121
        block.extend_from_slice(&b"usr lib share the of main error\n".repeat(20)); // text
        block.extend_from_slice(&[0; 64]);
        let tail = block.len();
        block.extend_from_slice(&random(600, 4));
        assert_eq!(raw_spans(&block), vec![0..565, tail..tail + 600]);
    }

    #[test]
    fn zero_runs_are_found_at_any_alignment() {
        for shift in 0..8 {
            let mut block = random(600 + shift, 5);
            let cut = block.len();
            block.extend_from_slice(&[0; 16]);
            block.extend_from_slice(&random(600, 6));
            assert_eq!(raw_spans(&block), vec![0..cut, cut + 16..cut + 616], "shift {shift}");
        }
    }

    #[test]
    fn blocks_without_long_stretches_have_no_spans() {
        assert!(raw_spans(&[]).is_empty());
        assert!(raw_spans(&[0; 4096]).is_empty());
        assert!(raw_spans(&random(MIN_SPAN - 1, 7)).is_empty());
    }
}
