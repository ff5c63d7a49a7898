#!/usr/bin/env node
// Test-support Cosmos DB API server: @vercel/cosmosdb-server, adjusted to behave like Azure Cosmos DB for NoSQL
// where our tests need it, served over plain http.
//
//   node tests/support/cosmos_server.js [--host 127.0.0.1] [--port 0]
//   -> prints one line "listening HOST:PORT" on stdout once it accepts connections.
//
// It patches INTERNALS of @vercel/cosmosdb-server@1.0.1 and @zeit/cosmosdb-query@0.7.2 (the route table, the
// read-document and batch handlers, the documents' private maps, Items.prototype.query, the query factory and the
// builtin-function table). Both are pinned exactly in package.json; re-check every patch below before upgrading
// either.
"use strict";

const { AsyncLocalStorage } = require("async_hooks");
const cosmosQuery = require("@zeit/cosmosdb-query");
const builtins = require("@zeit/cosmosdb-query/lib/builtin-functions");
const server = require("@vercel/cosmosdb-server");
const routes = require("@vercel/cosmosdb-server/lib/routes");
const Items = require("@vercel/cosmosdb-server/lib/account/items").default;
const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document").default;
const queryDocuments = require("@vercel/cosmosdb-server/lib/handler/query-documents").default;
const batchDocuments = require("@vercel/cosmosdb-server/lib/handler/batch-documents").default;
const documentOperations = require("@vercel/cosmosdb-server/lib/handler/_document-operations");
const readJson = require("@vercel/cosmosdb-server/lib/json").default;
const isTrueHeader = require("@vercel/cosmosdb-server/lib/true-header").default;

const PK_HEADER = "x-ms-documentdb-partitionkey";
const partitionScope = new AsyncLocalStorage(); // the partition key value of the single-partition query being served
let defaultDistance = "cosine"; // distance function of the container whose query is executing (set synchronously)

function headerPartitionKey(req) {
  try {
    const value = JSON.parse(req.headers[PK_HEADER]);
    const first = Array.isArray(value) ? value[0] : value;
    return first === undefined || (first !== null && typeof first === "object") ? undefined : first;
  } catch (err) {
    return undefined;
  }
}

// Azure: a transactional batch (the SDKs send it with "x-ms-cosmos-batch-atomic: true") is all-or-nothing within
// its logical partition. When an operation fails, nothing of the batch is applied; the answer is 207 Multi-Status,
// the failing operation carries its own status and every other operation 424 Failed Dependency (Learn,
// "Transactional batch operations in Azure Cosmos DB"; the .NET SDK promotes the failing operation's status out of
// the 207: azure-cosmos-dotnet-v3, Microsoft.Azure.Cosmos/src/Batch/TransactionalBatchResponse.cs). The batch's
// partition key is the request's partition-key header; operations need not repeat it (the Python SDK does not).
// The stock handler applies the operations one by one and keeps those before a failure, answers 200, and needs a
// partitionKey in each operation that reads or replaces a document (else 500).
const BATCH_OPERATIONS = {
  Create: documentOperations.createOperation,
  Upsert: documentOperations.upsertOperation,
  Read: documentOperations.readOperation,
  Delete: documentOperations.deleteOperation,
  Replace: documentOperations.replaceOperation
};

// The container's documents live in three private fields of Items (the id index, the items by _rid, the _rid
// counter). Items are replaced, never mutated, so shallow copies of the maps are a consistent snapshot.
function snapshotDocuments(documents) {
  return { data: new Map(documents._data), index: new Map(documents._index), ridCount: documents._ridCount };
}

function restoreDocuments(documents, snapshot) {
  documents._data = snapshot.data;
  documents._index = snapshot.index;
  documents._ridCount = snapshot.ridCount;
}

async function atomicBatch(account, req, res, { dbId, collId }) {
  const body = await readJson(req);
  const collection = account.database(dbId).collection(collId);
  if (!collection.read()) {
    res.statusCode = 404;
    return {};
  }
  if (!Array.isArray(body)) {
    res.statusCode = 400;
    return { message: "Invalid request body" };
  }
  const unsupported = body.find(op => !BATCH_OPERATIONS[op && op.operationType]);
  if (unsupported) {
    res.statusCode = 400;
    return { message: `Operation type '${unsupported && unsupported.operationType}' is not supported in Batch.` };
  }
  const partitionKey = req.headers[PK_HEADER];
  // From here to the return everything is synchronous: no other request runs between the snapshot and a restore.
  const documents = collection.documents;
  const before = snapshotDocuments(documents);
  const results = [];
  try {
    for (const op of body) {
      const result = BATCH_OPERATIONS[op.operationType](collection, { partitionKey, ...op });
      if (result.statusCode >= 400) {
        restoreDocuments(documents, before);
        res.statusCode = 207;
        const failed = results.length;
        return body.map((_, i) => ({ statusCode: i === failed ? result.statusCode : 424, requestCharge: 0 }));
      }
      const resourceBody = result.body;
      const eTag = resourceBody && resourceBody._etag;
      results.push({ statusCode: result.statusCode, requestCharge: 1, eTag, resourceBody });
    }
  } catch (err) {
    restoreDocuments(documents, before); // an unexpected error (answered 500) applies nothing either
    throw err;
  }
  return results;
}

function wrapHandler(handler) {
  if (handler === batchDocuments) {
    return (account, req, res, params) =>
      (isTrueHeader(req, "x-ms-cosmos-batch-atomic") ? atomicBatch : handler)(account, req, res, params);
  }
  if (handler === readDocument) {
    // Azure: a point read of a missing id (or of an id in another partition) is 404 NotFound. The stock handler
    // dereferences the missing document and answers 500.
    return (account, req, res, params) => {
      const collection = account.database(params.dbId).collection(params.collId);
      const pk = headerPartitionKey(req);
      if (collection.read() && pk !== undefined && !collection.document(params.docId, pk).read()) {
        res.statusCode = 404;
        return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
      }
      return handler(account, req, res, params);
    };
  }
  if (handler === queryDocuments) {
    // Azure: a query sent with a partition-key header runs against that one partition only, whatever its WHERE
    // says. The stock server ignores the header and instead demands a partition-key equality in the WHERE.
    return (account, req, res, params) => {
      const crossPartition = String(req.headers["x-ms-documentdb-query-enablecrosspartition"]).toLowerCase();
      const pk = headerPartitionKey(req);
      if (crossPartition === "true" || pk === undefined) return handler(account, req, res, params);
      req.headers["x-ms-documentdb-query-enablecrosspartition"] = "true"; // skip the stock WHERE check
      return partitionScope.run({ pk }, () => handler(account, req, res, params));
    };
  }
  return handler;
}

const route = routes.default;
routes.default = req => {
  const found = route(req);
  return found && [found[0], wrapHandler(found[1])];
};

const query = Items.prototype.query;
Items.prototype.query = function scopedQuery(params, options) {
  const scope = partitionScope.getStore();
  const collection = this._parent.read() || {};
  const vectors = (collection.vectorEmbeddingPolicy || {}).vectorEmbeddings || [];
  const all = this._data;
  if (scope) {
    this._data = new Map([...all].filter(([, item]) => this._getPartition(item.read()) === scope.pk));
  }
  // Azure: VectorDistance defaults to the distance function of the container's vector embedding policy.
  defaultDistance = (vectors[0] && vectors[0].distanceFunction) || "cosine";
  try {
    return query.call(this, params, options); // synchronous: nothing else runs until it returns
  } finally {
    this._data = all;
    defaultDistance = "cosine";
  }
};

// Azure: VectorDistance(a, b[, bruteForce[, {distanceFunction}]]) is a similarity score for cosine and dotproduct
// (higher is more similar) and a distance for euclidean (lower is more similar).
builtins.VECTORDISTANCE = (a, b, bruteForce, options) => {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length || a.length === 0) return undefined;
  const fn = String((options && options.distanceFunction) || defaultDistance).toLowerCase();
  const dot = (x, y) => x.reduce((sum, v, i) => sum + v * y[i], 0);
  if (fn === "dotproduct") return dot(a, b);
  if (fn === "euclidean") return Math.sqrt(a.reduce((sum, v, i) => sum + (v - b[i]) ** 2, 0));
  const norms = Math.sqrt(dot(a, a) * dot(b, b));
  return norms ? dot(a, b) / norms : 0;
};

// Azure: ORDER BY VectorDistance(...) returns the most similar items first (with TOP n|@k). The stock query
// compiler only orders by document paths, so each document gets its score under a hidden property (computed by a
// twin query over the same documents) and the ORDER BY is rewritten to that property.
const SCORE = "__vectorDistanceOrder";
const member = (alias, name) => ({
  type: "scalar_member_expression",
  object: { type: "identifier", name: alias },
  property: { type: "identifier", name },
  computed: false
});
const parse = cosmosQuery.default;
const compile = sql => {
  const q = parse(sql);
  const { from, orderBy } = q.ast.body || {};
  const sort = orderBy && orderBy.expressions.length === 1 ? orderBy.expressions[0] : null;
  const expr = sort && sort.expression;
  if (!from || !expr || expr.type !== "scalar_function_expression" || expr.udf) return q;
  if (expr.name.name.toUpperCase() !== "VECTORDISTANCE") return q;
  const alias = (from.source.alias || from.source.expression.expression).name;
  const options = expr.arguments[3];
  const fnProp = options && options.type === "object_constant" &&
    options.properties.find(p => p.key.value === "distanceFunction");
  const scores = parse("SELECT VALUE 1 FROM c"); // a fresh query whose body is replaced below
  scores.ast.body = {
    type: "select_query",
    from,
    select: {
      type: "select_specification",
      value: {
        type: "object_constant",
        properties: [
          { key: { type: "string_constant", value: "r" }, value: member(alias, "_rid") },
          { key: { type: "string_constant", value: "s" }, value: expr }
        ]
      }
    }
  };
  sort.expression = member(alias, SCORE);
  const exec = q.exec.bind(q);
  q.exec = (coll, options_) => {
    const fn = ((fnProp && fnProp.value.value) || defaultDistance).toLowerCase();
    const order = fn === "euclidean" ? "ASC" : "DESC";
    if (sort.order !== order) [sort.order, q._code] = [order, null]; // recompile (queries are cached per text)
    const byRid = new Map();
    const all = { ...options_, maxItemCount: undefined, continuation: undefined };
    scores.exec(coll, all).result.forEach(({ r, s }) => byRid.set(r, s));
    const out = exec(coll.map(d => ({ ...d, [SCORE]: byRid.get(d._rid) })), options_);
    out.result.forEach(row => row && typeof row === "object" && delete row[SCORE]);
    return out;
  };
  return q;
};
// Not an Azure behaviour, a speed-up: the query parser takes 10-400 ms per query text (nested calls inside
// parentheses are the slow case) and the stock server caches per container, so cache per text for all containers.
const compiled = new Map();
cosmosQuery.default = sql => {
  if (!compiled.has(sql)) compiled.set(sql, compile(sql));
  if (compiled.size > 2000) compiled.delete(compiled.keys().next().value);
  return compiled.get(sql);
};

const args = process.argv.slice(2);
const arg = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
// Azure keeps connections alive; the stock server answers "connection: close" to every request.
const app = server.createHttpServer({ keepAlive: true });
app.keepAliveTimeout = 65000; // longer than the clients' idle timeouts, so the client side closes first
app.listen(Number(arg("--port", "0")), arg("--host", "127.0.0.1"), () => {
  const { address, port } = app.address();
  process.stdout.write(`listening ${address}:${port}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
