from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "mcpsite.demo"
    label = "demo"
    verbose_name = "Demo"
