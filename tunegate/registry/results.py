"""What registration and the exports return: the registered version and its aliases, and each build measured
on the test rows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunegate.core.refs import AdapterRef


class RegistryResult(BaseModel):
    """Which version was registered and where the aliases ended."""

    model_name: str
    version: str
    aliases: list[str]
    promoted: bool
    reason: str
    model_uri: str
    tracking_uri: str = Field(default="", exclude=True, description="The registry it is in (no password).")

    def output_problems(self) -> list[str]:
        """A cached registration is used only while its version still loads: one whose model files were deleted
        from the artifact store registers the candidate again (`tunegate.runtime.stages.verified`)."""
        from tunegate.runtime.tracking import unloadable_version

        problem = unloadable_version(self.tracking_uri, self.model_name, self.version) if self.tracking_uri else None
        return [problem] if problem else []


class ExportedBuild(BaseModel):
    """One build of the trained model (the adapter as trained, merged, int8), measured on the evaluation's test
    rows: its task metric, its latency per request and its weights' size, and whether it may be registered."""

    name: str = Field(description="adapter, merged or int8.")
    weights: AdapterRef | None = Field(default=None, description="The directory it loads from; None: not built.")
    quantization: str | None = Field(default=None, description="int8_dynamic: quantized when loaded.")
    task_metric: float = Field(default=float("nan"), description="The evaluation's task metric on the test rows.")
    metric_drop: float = Field(default=float("nan"), description="The adapter's task metric minus this build's.")
    p50_ms: float = Field(default=float("nan"), description="Median milliseconds to answer one row alone.")
    p95_ms: float = Field(default=float("nan"), description="95th percentile of the same.")
    size_mb: float = Field(default=float("nan"), description="Weights served, MiB (an adapter counts its base).")
    registrable: bool = Field(default=False, description="Built and within export.max_metric_drop of the adapter.")
    reason: str = Field(description="Why it is (not) registered, with the numbers.")
    version: str | None = Field(default=None, description="Its model version once registered.")
    alias: str | None = Field(default=None, description="Its alias: the adapter version's alias + '-' + name.")


class ExportResult(BaseModel):
    """The adapter and each configured export, side by side (no builds when no export is configured)."""

    task_metric: str
    base_model: str = Field(description="The base the builds were made from (recorded on their versions).")
    trust_remote_code: bool = Field(default=False, description="Whether loading the builds may run model code.")
    builds: list[ExportedBuild] = Field(default_factory=list)

    def exports(self) -> list[ExportedBuild]:
        """The builds other than the adapter itself."""
        return [build for build in self.builds if build.name != "adapter"]
