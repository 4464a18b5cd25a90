-- Spend and baskets of the run by store region and format (STORE_REGION, STORE_FORMAT): the SPEND of the
-- validated lines, the distinct baskets (BASKET_KEY), spend per basket and the pair's share of the run's spend.
SELECT
    STORE_REGION AS store_region,
    STORE_FORMAT AS store_format,
    COUNT(DISTINCT BASKET_KEY) AS baskets,
    SUM(SPEND) AS spend,
    SUM(SPEND) / COUNT(DISTINCT BASKET_KEY) AS spend_per_basket,
    SUM(SPEND) / SUM(SUM(SPEND)) OVER () AS spend_share
FROM silver_lines
WHERE run = ?
GROUP BY STORE_REGION, STORE_FORMAT
ORDER BY store_region, store_format
