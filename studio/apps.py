from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    verbose_name = "Studio"

    def ready(self) -> None:
        from studio import live
        from tracing.signals import traces_changed

        # Open overview pages hear about every commit of the writer.
        traces_changed.connect(live.traces_changed, dispatch_uid="studio.live")
