//! The typed calls every runtime's leased connection offers, written once ([`typed_calls!`]).

/// Add the typed calls to a runtime's connection type.
///
/// The type provides `async fn request(&self, Query, Option<Duration>) -> Result<Answer,
/// PoolError>` and invokes `ibconn_core::typed_calls!();` inside its `impl` block; the macro adds
/// `current_time`, `historical_data`, `head_timestamp`, `contract_details` and
/// `matching_symbols`, each mapping its [`Answer`](crate::connection::Answer) or failing with
/// [`PoolError::UnexpectedAnswer`](crate::pool::PoolError::UnexpectedAnswer). A macro rather than
/// a trait so the methods stay inherent (no import needed) and their futures keep the runtime's
/// `Send`-ness.
#[macro_export]
macro_rules! typed_calls {
    () => {
        async fn typed<T>(
            &self,
            query: $crate::connection::Query,
            f: fn($crate::connection::Answer) -> Option<T>,
        ) -> Result<T, $crate::pool::PoolError> {
            f(self.request(query, None).await?).ok_or($crate::pool::PoolError::UnexpectedAnswer)
        }

        /// Server time, epoch seconds.
        pub async fn current_time(&self) -> Result<i64, $crate::pool::PoolError> {
            self.typed(
                $crate::connection::Query::CurrentTime,
                $crate::connection::Answer::into_current_time,
            )
            .await
        }

        /// Historical bars.
        pub async fn historical_data(
            &self,
            request: $crate::message::HistoricalDataRequest,
        ) -> Result<$crate::pool::Bars, $crate::pool::PoolError> {
            self.typed(
                $crate::connection::Query::HistoricalData(request),
                $crate::connection::Answer::into_bars,
            )
            .await
        }

        /// Earliest available data point.
        pub async fn head_timestamp(
            &self,
            request: $crate::message::HeadTimestampRequest,
        ) -> Result<String, $crate::pool::PoolError> {
            self.typed(
                $crate::connection::Query::HeadTimestamp(request),
                $crate::connection::Answer::into_head_timestamp,
            )
            .await
        }

        /// Contract details.
        pub async fn contract_details(
            &self,
            contract: $crate::message::Contract,
        ) -> Result<
            Vec<($crate::message::Contract, $crate::message::ContractDetails)>,
            $crate::pool::PoolError,
        > {
            self.typed(
                $crate::connection::Query::ContractDetails(contract),
                $crate::connection::Answer::into_contract_details,
            )
            .await
        }

        /// Symbol search.
        pub async fn matching_symbols(
            &self,
            pattern: &str,
        ) -> Result<Vec<$crate::message::ContractDescription>, $crate::pool::PoolError> {
            self.typed(
                $crate::connection::Query::MatchingSymbols(pattern.to_owned()),
                $crate::connection::Answer::into_symbols,
            )
            .await
        }
    };
}
