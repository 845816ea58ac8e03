//! SystemTap's `hrtimer_onthefly.exp`: a timer toggles the condition of another timer.
//!
//! One `#[test]` per subtest; the scripts and expected lines come from
//! `otf_testsuite::onthefly` (see `docs/testing.md`). Run one with e.g.
//! `cargo test -p otf-testsuite --test hrtimer_onthefly -- --exact otf_start_disabled_iter_1`.

use otf_testsuite::onthefly::Suite;

otf_testsuite::onthefly_tests!(Suite::Hrtimer;
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
    otf_timer_10ms,
    otf_timer_5ms,
    otf_stress_2ms_iter_50,
    otf_stress_1ms_iter_50,
    otf_stress_500us_iter_50,
    otf_stress_100us_iter_50,
    otf_stress_prof_iter_2000,
    otf_stress_hard_iter_2000,
);
