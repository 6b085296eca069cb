"""Extended-protocol session with binary parameters, NULLs and an error (asyncpg)."""
import asyncio, sys
import asyncpg

async def main(port):
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="hoop",
                                 password="hooppw", database="hoop", ssl=False)
    await conn.execute("CREATE TEMP TABLE kv (k int, v text, b bytea)")
    await conn.execute("INSERT INTO kv VALUES ($1, $2, $3)", 1, None, b"\x00\x01")
    await conn.executemany("INSERT INTO kv VALUES ($1, $2, $3)", [(2, "two", None), (3, "three", b"")])
    rows = await conn.fetch("SELECT k, v, b FROM kv WHERE k >= $1 ORDER BY k", 1)
    assert len(rows) == 3, rows
    try:
        await conn.fetch("SELECT k / $1 FROM kv", 0)
    except asyncpg.DivisionByZeroError:
        pass
    async with conn.transaction():
        await conn.execute("UPDATE kv SET v = $1 WHERE k = $2", "uno", 1)
    await conn.close()

asyncio.run(main(int(sys.argv[1])))
