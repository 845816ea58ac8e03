//! The otf BPF runtime object, its map layout, loading and event decoding.
