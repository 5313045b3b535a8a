//! `retain_for`: each purchase counts from its event time for the retention period, then leaves.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::Map;

use topsellers_model::purchase::Event;

use crate::Time;

/// Adds, for every purchase, its retraction at `ts + retention` (DESIGN.md, "Retention").
pub trait RetainFor<'scope> {
    /// Pairs each update `(e, t, q)` with `(e, e.ts + R, −q)`; drops updates already expired on
    /// arrival (`e.ts + R <= t`), which would cancel within one time anyway. Pre-aggregated
    /// updates ([`Event::aggregate`]) pass through unchanged.
    ///
    /// A score as of `T` then counts exactly the purchases with `T − R < ts ≤ T`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use topsellers_operators::RetainFor;
    /// use topsellers_model::purchase::Event;
    ///
    /// timely::example(|scope| {
    ///     let (_handle, purchases) = scope.new_collection::<Event, i64>();
    ///     let _counted = purchases.retain_for(365 * 86_400_000);
    /// });
    /// ```
    fn retain_for(self, retention_ms: i64) -> Self;
}

impl<'scope> RetainFor<'scope> for VecCollection<'scope, Time, Event, i64> {
    fn retain_for(self, retention_ms: i64) -> Self {
        let retention = retention_ms.max(0);
        self.inner
            .flat_map(move |(event, time, quantity): (Event, Time, i64)| {
                let expires = event.ts_ms.saturating_add(retention).max(0) as Time;
                let retraction = (event.aggregate.is_none() && expires > time)
                    .then(|| (event.clone(), expires, -quantity));
                let counts = event.aggregate.is_some() || expires > time;
                counts
                    .then_some((event, time, quantity))
                    .into_iter()
                    .chain(retraction)
            })
            .as_collection()
    }
}
