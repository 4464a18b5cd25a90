-- Per shop week of the run: its baskets by price-sensitivity label (BASKET_PRICE_SENSITIVITY, XX included)
-- and each label's share of the week's baskets. A basket is a BASKET_KEY of the run's validated lines.
WITH baskets AS (
    SELECT DISTINCT SHOP_WEEK, BASKET_KEY, BASKET_PRICE_SENSITIVITY
    FROM silver_lines
    WHERE run = ?
)
SELECT
    SHOP_WEEK AS shop_week,
    BASKET_PRICE_SENSITIVITY AS label,
    COUNT(*) AS baskets,
    CAST(COUNT(*) AS DOUBLE) / SUM(COUNT(*)) OVER (PARTITION BY SHOP_WEEK) AS share
FROM baskets
GROUP BY SHOP_WEEK, BASKET_PRICE_SENSITIVITY
ORDER BY shop_week, label
