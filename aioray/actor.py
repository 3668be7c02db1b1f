"""Ray's ``ray.actor`` names: ``exit_actor``, ``ActorHandle``, ``ActorClass``,
``ActorClassInheritanceException``."""

from aioray._handles.actor import ActorClass, ActorHandle, ActorMethod, exit_actor
from aioray.exceptions import ActorClassInheritanceException

__all__ = ["ActorClass", "ActorClassInheritanceException", "ActorHandle", "ActorMethod",
           "exit_actor"]
