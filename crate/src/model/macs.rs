//! Counts multiply-accumulates of the layers that actually run, so `epsvae inspect` and the tests
//! report the cost of the real forward pass rather than a formula that could drift from it.

use std::cell::Cell;

thread_local! {
    static COUNTER: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Adds `macs` to the counter when a [`measure`] is in progress on this thread.
pub(crate) fn add(macs: u64) {
    COUNTER.with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + macs));
        }
    });
}

/// Runs `f` and returns its result with the multiply-accumulates it performed.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let outer = COUNTER.with(|c| c.replace(Some(0)));
    let out = f();
    let n = COUNTER.with(|c| c.replace(outer)).unwrap_or(0);
    if let Some(o) = outer {
        COUNTER.with(|c| c.set(Some(o + n)));
    }
    (out, n)
}
