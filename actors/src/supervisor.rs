//! Restarts a stage actor that fails (a panic, or an error from its handler), and keeps
//! the delivery slot pointing at the live one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::stage::{MakeLogic, Slot, StageActor, StageArgs, StageCtx};

/// Supervises one stage replica.
pub struct SupervisorActor;

/// What the supervisor needs to start (and restart) its stage.
pub struct SupervisorArgs {
    pub(crate) ctx: StageCtx,
    pub(crate) make: MakeLogic,
    pub(crate) slot: Slot,
}

/// The supervisor's state.
pub struct SupervisorState {
    args: SupervisorArgs,
    restarts: u64,
}

/// Spawns the stage actor linked to `supervisor` and publishes it in the slot.
fn start_child(
    args: &SupervisorArgs,
    supervisor: ActorCell,
) -> Pin<Box<dyn Future<Output = Result<(), ActorProcessingErr>> + Send + '_>> {
    Box::pin(async move {
        let child_args = StageArgs {
            ctx: args.ctx.clone(),
            make: Arc::clone(&args.make),
        };
        let (child, _) = Actor::spawn_linked(None, StageActor, child_args, supervisor).await?;
        *args.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    })
}

impl Actor for SupervisorActor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<()>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        start_child(&args, me.get_cell()).await?;
        Ok(SupervisorState { args, restarts: 0 })
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<()>,
        event: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(_, err) => {
                st.restarts += 1;
                let stage = st.args.ctx.stage;
                metrics::counter!("braid_stage_restarts_total", "stage" => stage.as_str()).increment(1);
                tracing::error!(
                    "{stage} {} failed ({err}); restart #{}",
                    st.args.ctx.instance,
                    st.restarts
                );
                *st.args.slot.write().unwrap_or_else(|p| p.into_inner()) = None;
                start_child(&st.args, me.get_cell()).await?;
            }
            SupervisionEvent::ActorTerminated(..) => me.stop(None),
            _ => {}
        }
        Ok(())
    }
}
