/*!
Supervision: whether, when and how often a dead agent is started again.

An opt-in policy in the manner of systemd's `Restart=` and s6's run scripts, with the limits
that keep a crashing agent from becoming a respawn storm:

| policy       | exit 0 | non-zero exit | killed by a signal | death not known | deliberate stop |
|--------------|--------|---------------|--------------------|-----------------|-----------------|
| `no`         | -      | -             | -                  | -               | -               |
| `on-failure` | -      | restart       | restart            | restart         | -               |
| `always`     | restart| restart       | restart            | restart         | -               |

A death whose status cannot be learnt (the pane was already gone) counts as a failure: nothing
proves it was clean. A deliberate stop is the sidecar being told to stop (`mosaic-fleet stop`
signals it): a stopped sidecar has ended, so nothing is left that could restart the agent.

- **Backoff.** The delay before a restart grows geometrically (×2) from a floor (1 s) to a cap
  (5 min) with each consecutive *unstable* death, one that ends a run shorter than the
  stability period (10 min). A death after a stable run restarts after the floor and clears
  the count.
- **Give-up.** The burst-th unstable death within the window (5 in 15 min) is not restarted:
  the agent is `failed` until someone restarts it (`mosaic-fleet restart`).
- **Fleet-wide guard.** At most one restart per guard period (10 s) among all the agents of one
  heartbeat directory, so an outage that kills every agent brings them back one by one. The
  guard is the file `.restart-guard` in the heartbeat directory (agent names never start with
  `.`), holding the time of the last restart; each sidecar takes a non-blocking `flock` on it
  just long enough to read and replace that time.

The room, by job:

- [`policy`]: `Restart`, `End`, `Limits`, and `Backoff`, which turns each death into a
  `Verdict` (leave, restart after a delay, give up);
- [`guard`]: the fleet-wide `.restart-guard` slot (`take_slot`) and its clock;
- [`protocol`]: the respawn helper's line protocol (`Answer`, `GO`) and the restart
  arguments the launcher hands the sidecar (`sidecar_args`);
- [`flags`]: the policy's limits as both binaries' flags (`LimitArgs`), read and checked.

The arithmetic ([`Backoff`], [`guard_wait`]) is pure, on times given by the caller, so it is
tested without clocks.
*/

pub mod flags;
pub mod guard;
pub mod policy;
pub mod protocol;

pub use flags::{settings, LimitArgs};
pub use guard::{boot_clock, guard_wait, take_slot, Slot};
pub use policy::{Backoff, End, Limits, Restart, Verdict};
pub use protocol::{sidecar_args, Answer, GO};
