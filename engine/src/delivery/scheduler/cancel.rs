//! Cancellation: waiting items of a cancelled campaign or a deleted message are taken out of their
//! lanes (held or not) and handed to the driver, which ends their recipients as `cancelled`.

use penguin_queue::MessageId;

use super::Scheduler;
use super::names::LaneId;

impl Scheduler {
    /// Takes every waiting item for which `pick(tenant, campaign, id)` holds out of the lanes, for the
    /// driver to cancel ([`Scheduler::take_cancelled`]); returns how many. Items on a connection
    /// already are not touched: they end as their attempt says.
    pub fn cancel_where(&mut self, pick: impl Fn(&str, &str, MessageId) -> bool) -> usize {
        let mut taken = Vec::new();
        for index in 0..self.lanes.len() {
            if self.lanes[index].queued == 0 {
                continue;
            }
            let names = &self.names;
            let items = self.lanes[index].take_where(|item| {
                pick(
                    &names.name(item.key.tenant),
                    &names.name(item.key.campaign),
                    item.id,
                )
            });
            let lane_id = LaneId(index as u32);
            for item in items {
                taken.push(self.work(item, lane_id));
            }
        }
        let count = taken.len();
        if count > 0 {
            self.cancelled.extend(taken);
            self.driver.notify_one();
        }
        count
    }

    /// The tenant and campaign of an item.
    pub fn item_names(&self, item: &super::Item) -> (std::sync::Arc<str>, std::sync::Arc<str>) {
        (
            self.names.name(item.key.tenant),
            self.names.name(item.key.campaign),
        )
    }

    /// The work of an item that is on no lane (cancelled before it was routed).
    pub fn unrouted_work(&self, item: super::Item) -> super::Work {
        self.work(item, LaneId(u32::MAX))
    }

    /// Items taken out by [`Scheduler::cancel_where`]; the driver cancels them.
    pub fn take_cancelled(&mut self) -> Vec<super::Work> {
        std::mem::take(&mut self.cancelled)
    }
}
