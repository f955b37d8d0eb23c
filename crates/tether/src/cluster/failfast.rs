//! One attempt; its failure is the call's.

use serde::Serialize;

use super::directory::Call;
use crate::{error::Error, protocol::Frame};

pub(crate) async fn call<A: Serialize + ?Sized>(
    call: &Call<'_, A>,
) -> Result<Option<Frame>, Error> {
    call.once(&[]).await.1
}
