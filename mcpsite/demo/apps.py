from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "mcpsite.demo"
    label = "demo"
    verbose_name = "Demo"

    def ready(self) -> None:
        from .oauth import connect_signals

        connect_signals()  # remember which OAuth clients were used, so unused registrations can be purged
