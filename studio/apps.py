from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    verbose_name = "Studio"

    def ready(self) -> None:
        from studio import live
        from tracing.signals import traces_changed, traces_purged

        # Open overview pages hear about every commit of the writer.
        traces_changed.connect(live.traces_changed, dispatch_uid="studio.live")
        # ...and drop the rows retention deleted.
        traces_purged.connect(live.traces_purged, dispatch_uid="studio.live.purged")
