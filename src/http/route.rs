//! The routes: one variant per path pattern.

/// Every route of the API and the console. With [`Route::label`] (the path pattern) and
/// `routes::methods` this is the one route table: routing, `405 Allow`, the metrics labels
/// and the OpenAPI document read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`
    Health,
    /// `GET /ready`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `POST /api/v1/optimization/recommend`
    Recommend,
    /// `GET /api/v1/rules/status`
    RulesStatus,
    /// `POST /api/v1/rules/reload`
    RulesReload,
    /// `POST /api/v1/rules/evaluate`
    RulesEvaluate,
    /// `GET|POST /api/v1/jobs` (list, create)
    Jobs,
    /// `POST /api/v1/jobs/claim`
    JobsClaim,
    /// `GET /api/v1/jobs/{id}`
    Job,
    /// `POST /api/v1/jobs/{id}/heartbeat`
    JobHeartbeat,
    /// `POST /api/v1/jobs/{id}/complete`
    JobComplete,
    /// `POST /api/v1/jobs/{id}/fail`
    JobFail,
    /// `GET|POST /api/v1/jobs/{id}/hitl` (read, ask)
    JobHitl,
    /// `POST /api/v1/jobs/{id}/hitl/response`
    JobHitlResponse,
    /// `POST /api/v1/jobs/{id}/cancel`
    JobCancel,
    /// `POST /api/v1/optimization/outcomes`
    Outcomes,
    /// `GET /api/v1/optimization/metrics`
    SelectorMetrics,
    /// `POST /api/v1/rules/rollback`
    RulesRollback,
    /// `GET /api/v2/training/analytics`
    TrainingAnalytics,
    /// `POST /api/v2/training/select`
    TrainingSelect,
    /// `POST /api/v2/training/results`
    TrainingResults,
    /// `GET /api/v1/rules/context`
    RulesContext,
    /// `GET /api/v1/rules/map`
    RulesMap,
    /// `GET /api/v1/optimization/timeline`
    Timeline,
    /// `GET /` (the console's page)
    Console,
    /// `GET /console/{path}` (the console's assets)
    ConsoleAsset,
    /// Anything else.
    Unmatched,
}

impl Route {
    /// Every route, in label order.
    pub const ALL: [Route; 29] = [
        Route::Health,
        Route::Ready,
        Route::Metrics,
        Route::OpenApi,
        Route::Recommend,
        Route::RulesStatus,
        Route::RulesReload,
        Route::RulesEvaluate,
        Route::Jobs,
        Route::JobsClaim,
        Route::Job,
        Route::JobHeartbeat,
        Route::JobComplete,
        Route::JobFail,
        Route::JobHitl,
        Route::JobHitlResponse,
        Route::JobCancel,
        Route::Outcomes,
        Route::SelectorMetrics,
        Route::RulesRollback,
        Route::TrainingAnalytics,
        Route::TrainingSelect,
        Route::TrainingResults,
        Route::RulesContext,
        Route::RulesMap,
        Route::Timeline,
        Route::Console,
        Route::ConsoleAsset,
        Route::Unmatched,
    ];

    /// The path pattern used as label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::Recommend => "/api/v1/optimization/recommend",
            Route::RulesStatus => "/api/v1/rules/status",
            Route::RulesReload => "/api/v1/rules/reload",
            Route::RulesEvaluate => "/api/v1/rules/evaluate",
            Route::Jobs => "/api/v1/jobs",
            Route::JobsClaim => "/api/v1/jobs/claim",
            Route::Job => "/api/v1/jobs/{id}",
            Route::JobHeartbeat => "/api/v1/jobs/{id}/heartbeat",
            Route::JobComplete => "/api/v1/jobs/{id}/complete",
            Route::JobFail => "/api/v1/jobs/{id}/fail",
            Route::JobHitl => "/api/v1/jobs/{id}/hitl",
            Route::JobHitlResponse => "/api/v1/jobs/{id}/hitl/response",
            Route::JobCancel => "/api/v1/jobs/{id}/cancel",
            Route::Outcomes => "/api/v1/optimization/outcomes",
            Route::SelectorMetrics => "/api/v1/optimization/metrics",
            Route::RulesRollback => "/api/v1/rules/rollback",
            Route::TrainingAnalytics => "/api/v2/training/analytics",
            Route::TrainingSelect => "/api/v2/training/select",
            Route::TrainingResults => "/api/v2/training/results",
            Route::RulesContext => "/api/v1/rules/context",
            Route::RulesMap => "/api/v1/rules/map",
            Route::Timeline => "/api/v1/optimization/timeline",
            Route::Console => "/",
            Route::ConsoleAsset => "/console/{path}",
            Route::Unmatched => "unmatched",
        }
    }

    /// Position in [`Route::ALL`].
    pub(super) fn index(self) -> usize {
        self as usize
    }
}
