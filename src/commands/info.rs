//! guest-sync, guest-sync-delimited, guest-ping, guest-info.

use super::{is_enabled, Ctx, Outcome, COMMANDS};
use crate::config::VERSION;
use crate::json::{Object, Value};
use crate::protocol::{Args, QgaError};

pub fn sync(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("id")?;
    a.finish()?;
    Ok(Outcome::Return(Value::Int(id)))
}

pub fn sync_delimited(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("id")?;
    a.finish()?;
    Ok(Outcome::Delimited(Value::Int(id)))
}

pub fn ping(_: &mut Ctx<'_>, a: Args) -> Result<Outcome, QgaError> {
    a.finish()?;
    crate::log::info("guest-ping called");
    Ok(Outcome::Return(Value::empty_object()))
}

pub fn info(ctx: &mut Ctx<'_>, a: Args) -> Result<Outcome, QgaError> {
    a.finish()?;
    let list = COMMANDS
        .iter()
        .rev()
        .map(|c| {
            Value::Object(
                Object::with_capacity(3)
                    .with("name", Value::str(c.name))
                    .with("enabled", Value::Bool(is_enabled(c, ctx.cfg, ctx.guest)))
                    .with("success-response", Value::Bool(c.success_response)),
            )
        })
        .collect();
    Ok(Outcome::Return(Value::Object(
        Object::with_capacity(2).with("version", Value::str(VERSION)).with("supported_commands", Value::List(list)),
    )))
}
