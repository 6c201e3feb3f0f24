MODEL (name shop.prices, kind SEED (path '../seeds/prices.csv'));
