"""ib_async 2.1.0 (text protocol, v157..178) against ibconn-sim.

Usage: ib_async_smoke.py PORT
Prints one JSON object with what the client decoded; the Rust test
tests/tests/ib_async_interop.rs asserts on it. Exits non-zero on any failure.
"""

import asyncio
import datetime as dt
import json
import sys

import ib_async
from ib_async import IB, Stock


def epoch(value):
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    return str(value)


async def main(port: int) -> dict:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=17, timeout=10)
    out = {
        "ib_async": ib_async.__version__,
        "server_version": ib.client.serverVersion(),
        "accounts": ib.managedAccounts(),
    }
    aapl = Stock("AAPL", "SMART", "USD")

    details = await asyncio.wait_for(ib.reqContractDetailsAsync(aapl), 10)
    out["details"] = [
        {
            "conId": d.contract.conId,
            "symbol": d.contract.symbol,
            "secType": d.contract.secType,
            "primaryExchange": d.contract.primaryExchange,
            "longName": d.longName,
            "minTick": d.minTick,
            "timeZoneId": d.timeZoneId,
            "stockType": d.stockType,
        }
        for d in details
    ]

    head = await asyncio.wait_for(
        ib.reqHeadTimeStampAsync(aapl, "TRADES", True, 2), 10
    )
    out["head"] = epoch(head)

    hourly = await asyncio.wait_for(
        ib.reqHistoricalDataAsync(
            aapl, "20251231 21:00:00 UTC", "2 D", "1 hour", "TRADES", True, 2
        ),
        10,
    )
    out["hourly"] = {
        "count": len(hourly),
        "first": epoch(hourly[0].date),
        "last": epoch(hourly[-1].date),
        "ohlc_ok": all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in hourly),
        "volume": hourly[0].volume,
        "barCount": hourly[0].barCount,
    }

    daily = await asyncio.wait_for(
        ib.reqHistoricalDataAsync(aapl, "20251231 21:00:00 UTC", "1 M", "1 day", "TRADES", True, 1),
        10,
    )
    out["daily"] = {"count": len(daily), "first": str(daily[0].date), "last": str(daily[-1].date)}
    ib.disconnect()
    return out


if __name__ == "__main__":
    result = asyncio.run(main(int(sys.argv[1])))
    print(json.dumps(result))
