"""Ray's ``ray.actor`` names: ``exit_actor``, ``ActorHandle``, ``ActorClass``."""

from aioray._handles.actor import ActorClass, ActorHandle, ActorMethod, exit_actor

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor"]
