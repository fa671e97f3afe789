"""ib_async 2.1.0 (text protocol, v157..178) streaming from ibconn-sim.

Usage: ib_async_streaming.py PORT
Subscribes to market data, 5-second real-time bars and tick-by-tick (Last, BidAsk) for AAPL,
lets them run, cancels them, checks nothing more arrives, then prints one JSON line and waits
for a line on stdin before it disconnects (so the Rust test tests/tests/streaming_interop.rs
can check the sim's counters while the session is still up). Exits non-zero on any failure.
"""

import asyncio
import json
import sys

import ib_async
from ib_async import IB, Stock


async def main(port: int) -> None:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=18, timeout=10)
    aapl = Stock("AAPL", "SMART", "USD")
    # ib_async keys tickers by conId: qualify first (reqContractDetails).
    await asyncio.wait_for(ib.qualifyContractsAsync(aapl), 10)
    ticks, tick_by_ticks = [], []

    def on_pending(tickers):
        for t in tickers:
            ticks.extend(t.ticks)
            tick_by_ticks.extend(t.tickByTicks)

    ib.pendingTickersEvent += on_pending
    ticker = ib.reqMktData(aapl, "", False, False)
    bars = ib.reqRealTimeBars(aapl, 5, "TRADES", False)
    ib.reqTickByTickData(aapl, "Last", 0, False)
    ib.reqTickByTickData(aapl, "BidAsk", 0, False)
    await asyncio.sleep(11)

    lasts = [t for t in tick_by_ticks if hasattr(t, "exchange")]
    quotes = [t for t in tick_by_ticks if hasattr(t, "bidPrice")]
    out = {
        "ib_async": ib_async.__version__,
        "server_version": ib.client.serverVersion(),
        "ticker": {
            "marketDataType": ticker.marketDataType,
            "minTick": ticker.minTick,
            "bid": ticker.bid,
            "ask": ticker.ask,
            "last": ticker.last,
            "bidSize": ticker.bidSize,
            "volume": ticker.volume,
            "close": ticker.close,
            "ticks": len(ticks),
        },
        "bars": {
            "count": len(bars),
            "aligned": all(int(b.time.timestamp()) % 5 == 0 for b in bars),
            "ohlc_ok": all(b.low <= min(b.open_, b.close) <= max(b.open_, b.close) <= b.high for b in bars),
            "volume": bars[0].volume if bars else 0,
        },
        "tick_by_tick": {
            "last": len(lasts),
            "bid_ask": len(quotes),
            "last_exchange": lasts[0].exchange if lasts else "",
        },
    }

    ib.cancelMktData(aapl)
    ib.cancelRealTimeBars(bars)
    ib.cancelTickByTickData(aapl, "Last")
    ib.cancelTickByTickData(aapl, "BidAsk")
    seen = (len(ticks), len(tick_by_ticks))
    await asyncio.sleep(2.5)
    out["after_cancel"] = {
        "new_ticks": len(ticks) - seen[0],
        "new_tick_by_tick": len(tick_by_ticks) - seen[1],
    }
    print(json.dumps(out), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    ib.disconnect()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
