//! One evaluation's state: the event's [`Scope`] (what an expression can read) and the
//! frame of local variables (assignments, block parameters, named captures).

use std::cell::RefCell;

use spate_protocol::{EventTime, RecordRef};

use super::value::Val;

/// What an expression can read about the event.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub record: RecordRef<'a>,
    pub tag: &'a [u8],
    /// `tag.split('.')`.
    pub tag_parts: &'a [&'a [u8]],
    pub time: EventTime,
}

/// One evaluation: the event's scope and the frame of local variables.
pub(super) struct Env<'s, 'a> {
    scope: &'s Scope<'a>,
    vars: RefCell<Vec<Val<'a>>>,
}

impl<'s, 'a> Env<'s, 'a> {
    pub(super) fn new(scope: &'s Scope<'a>, nvars: usize) -> Self {
        Env { scope, vars: RefCell::new(vec![Val::Nil; nvars]) }
    }

    pub(super) fn get(&self, i: usize) -> Val<'a> {
        self.vars.borrow().get(i).cloned().unwrap_or(Val::Nil)
    }

    pub(super) fn set(&self, i: usize, v: Val<'a>) {
        if let Some(slot) = self.vars.borrow_mut().get_mut(i) {
            *slot = v;
        }
    }
}

impl<'a> std::ops::Deref for Env<'_, 'a> {
    type Target = Scope<'a>;
    fn deref(&self) -> &Scope<'a> {
        self.scope
    }
}
