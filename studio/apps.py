from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    verbose_name = "Studio"

    def ready(self) -> None:
        from studio import extensions, live, tree_cache
        from tracing import search
        from tracing.signals import traces_changed, traces_purged

        # Open overview pages hear about every commit of the writer.
        traces_changed.connect(live.traces_changed, dispatch_uid="studio.live")
        # ...and drop the rows retention deleted.
        traces_purged.connect(live.traces_purged, dispatch_uid="studio.live.purged")
        # A big trace's shared tree data is stale once the trace changes or goes.
        traces_changed.connect(tree_cache.forget, dispatch_uid="studio.tree_cache")
        traces_purged.connect(tree_cache.forget, dispatch_uid="studio.tree_cache.purged")
        # The search index of a serving process catches up after each commit (SQLite).
        extensions.serving.connect(search.indexer.start, dispatch_uid="studio.search_indexer")
        traces_changed.connect(search.indexer.wake, dispatch_uid="studio.search_indexer")
