//! SystemTap's `uprobes_onthefly.exp`: a timer drives a state machine over `foo` and its return in a program built with `gcc -g -O0` and run in the background.
//!
//! One `#[test]` per subtest; the scripts and expected lines come from
//! `otf_testsuite::onthefly` (see `docs/testing.md`). Run one with e.g.
//! `cargo test -p otf-testsuite --test uprobes_onthefly -- --exact otf_start_disabled_iter_1`.

use otf_testsuite::onthefly::Suite;

otf_testsuite::onthefly_tests!(Suite::Uprobes;
    otf_finish_at_start_disabled,
    otf_finish_at_start_enabled,
    otf_start_disabled_iter_1,
    otf_start_enabled_iter_1,
    otf_start_disabled_iter_2,
    otf_start_enabled_iter_2,
    otf_start_disabled_iter_3,
    otf_start_enabled_iter_3,
    otf_start_disabled_iter_4,
    otf_start_enabled_iter_4,
    otf_start_disabled_iter_5,
    otf_start_enabled_iter_5,
    otf_timer_100ms,
    otf_timer_50ms,
    otf_stress_10ms_iter_50,
    otf_stress_5ms_iter_50,
    otf_stress_1ms_iter_50,
    otf_stress_500us_iter_50,
    otf_stress_100us_iter_50,
    otf_stress_prof_iter_2000,
    otf_stress_hard_iter_2000,
);
